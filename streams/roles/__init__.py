"""The roles a worker can run (``AUTOSTEER_ROLES``), each a small class that registers its
own agents and timers on a :class:`~autosteer.streams.runtime.Runtime` and owns its state:

- ``router``  :class:`~.router.Router` (router, feedback, control step), with shadow
  sampling and agreement pairing (:mod:`.shadows`), the drift watch (:mod:`.drift`),
  the canary judge (:mod:`.rollout`) and the action follower (:mod:`.control`);
- ``edge``, ``cloud``  :class:`~.detector.DetectorRole`, one per tier;
- ``sink``    the telemetry loader (:mod:`.telemetry`);
- ``ingest``  :class:`~.ingest.Ingest` (RTSP and file cameras);
- ``anomaly`` :class:`~.control.ControlPlane` (anomalies, root causes, actions);
- ``retrain`` :class:`~.retrain.RetrainRole`.

Every worker also runs telemetry (windows, heartbeats, the topic check) and, with a
router or a detector, the model rollout (:mod:`.rollout`).
"""

ROLES = ("router", "edge", "cloud", "sink", "ingest", "anomaly", "retrain")

__all__ = ["ROLES"]
