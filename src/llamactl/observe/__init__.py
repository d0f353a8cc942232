"""What llamactl saw: Prometheus metrics and the activity log of ``/v1`` requests.

The proxy opens a ``Tally`` per request (``Recorder.begin``) and tells it the status,
the first body byte, the wait for a start and the end; the manager's backends report
their lifecycle (``Metrics`` is a ``manager.lifecycle.Lifecycle``). Counting costs the
hot path a few attribute writes; ``Recorder.drain`` counts the finished requests and makes
the activity log's rows in batches, written in one transaction each.
"""

from llamactl.observe.metrics import BUCKETS, InstanceSample, Metrics
from llamactl.observe.recorder import ActivityRow, Recorder, Tally
from llamactl.observe.usage import usage_of

__all__ = [
    "BUCKETS",
    "ActivityRow",
    "InstanceSample",
    "Metrics",
    "Recorder",
    "Tally",
    "usage_of",
]
