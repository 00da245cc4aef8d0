"""RTSP test camera: loops a video file forever at ``rtsp://127.0.0.1:PORT/MOUNT``.

Runs under Debian's ``/usr/bin/python3`` (it needs ``gi`` with GstRtspServer), as a
separate process started by :mod:`autosteer.infra.rtsp`. It imports nothing from
autosteer, so it also works from a plain copy of this file:

    /usr/bin/python3 rtsp_server.py --video vtest.avi --port 8554 --mount cam1 --fps 10

One player pipeline decodes the file and loops it (seek to 0 on EOS) into an
``intervideosink``; every RTSP client shares one encoder fed by ``intervideosrc``.
``SIGUSR1`` darkens the picture (contrast x0.12: night falls, a drift), ``SIGUSR2``
restores it.
"""

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", required=True)
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--mount", default="cam1")
    ap.add_argument("--fps", type=int, default=10)
    args = ap.parse_args()

    Gst.init(None)
    channel = "autosteer-" + args.mount
    player = Gst.parse_launch(
        f'filesrc location="{args.video}" ! decodebin ! videoconvert ! videorate ! '
        f"video/x-raw,format=I420,framerate={args.fps}/1 ! videobalance name=balance ! "
        f"intervideosink channel={channel} sync=true"
    )
    loop = GLib.MainLoop()

    def on_message(_bus, msg):
        if msg.type == Gst.MessageType.EOS:
            player.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.KEY_UNIT, 0)
        elif msg.type == Gst.MessageType.ERROR:
            err, dbg = msg.parse_error()
            print(f"player error: {err} {dbg}", file=sys.stderr, flush=True)
            loop.quit()

    bus = player.get_bus()
    bus.add_signal_watch()
    bus.connect("message", on_message)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( intervideosrc channel={channel} ! video/x-raw,framerate={args.fps}/1 ! videoconvert ! "
        f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={args.fps} bitrate=2000 ! "
        "video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory("/" + args.mount, factory)
    if server.attach(None) == 0:
        print(f"cannot bind RTSP port {args.port}", file=sys.stderr, flush=True)
        return 2

    player.set_state(Gst.State.PLAYING)
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)

    balance = player.get_by_name("balance")

    def night(*_args):  # SIGUSR1: the lights go down (a drift for the closed loop)
        balance.set_property("contrast", 0.12)
        balance.set_property("brightness", -0.02)
        print("night", flush=True)
        return True

    def day(*_args):  # SIGUSR2: back to normal
        balance.set_property("contrast", 1.0)
        balance.set_property("brightness", 0.0)
        print("day", flush=True)
        return True

    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGUSR1, night)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGUSR2, day)
    print(f"serving rtsp://127.0.0.1:{args.port}/{args.mount}", flush=True)
    loop.run()
    player.set_state(Gst.State.NULL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
