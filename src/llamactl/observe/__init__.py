"""What llamactl saw: Prometheus metrics and the activity log of ``/v1`` requests.

The proxy opens a ``Tally`` per request (``Recorder.begin``) and tells it the status,
the first body byte, the wait for a start and the end; the manager's backends report
their lifecycle (``Metrics`` is a ``manager.lifecycle.Lifecycle``). Counting costs the
hot path a few attribute writes and one dictionary lookup; the activity log's rows wait
in memory and are written in batches (``Recorder.take_activity``).
"""

from llamactl.observe.metrics import BUCKETS, InstanceSample, Metrics
from llamactl.observe.recorder import Recorder, Tally
from llamactl.observe.usage import usage_of

__all__ = ["BUCKETS", "InstanceSample", "Metrics", "Recorder", "Tally", "usage_of"]
