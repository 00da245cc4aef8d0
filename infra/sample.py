"""The sample video: ``vtest.avi`` (street pedestrians) from Debian's ``opencv-doc``.

Only that one file is extracted from the package. The package's copyright file says
Apache-2.0 AND BSD-3-Clause; the footage likely comes from the PETS 2009 data set.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

from autosteer.errors import InfraError

log = logging.getLogger(__name__)

MEMBER = "./usr/share/doc/opencv-doc/examples/data/vtest.avi"


def ensure_sample_video(dest: Path) -> Path:
    """Return ``dest``, fetching vtest.avi there first if it is missing."""
    if dest.exists() and dest.stat().st_size > 1_000_000:
        return dest
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise InfraError(
            f"no sample video at {dest}, and apt-get/dpkg-deb are missing to fetch vtest.avi "
            "from Debian's opencv-doc; copy any video file to that path (or set "
            "AUTOSTEER_SAMPLE_VIDEO)"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        log.info("downloading opencv-doc to extract vtest.avi")
        res = subprocess.run(["apt-get", "download", "opencv-doc"], cwd=tmp,
                             capture_output=True, text=True)
        debs = list(Path(tmp).glob("opencv-doc_*.deb"))
        if res.returncode != 0 or not debs:
            raise InfraError(f"apt-get download opencv-doc failed: {res.stderr.strip()[-500:]}. "
                             "Run `apt-get update` first, or copy a video to " + str(dest))
        tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(debs[0])], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", tmp, MEMBER], stdin=tar.stdout, check=True)
        tar.wait()
        shutil.move(str(Path(tmp) / MEMBER), dest)
    return dest
