"""Whether EC2 took a spot instance back, from Packer's output or an instance's state reason."""

from __future__ import annotations

# What EC2 writes when it reclaims spot capacity: the instance's StateReason codes
# (EC2 API reference, StateReason) and the spot request status codes of an interruption
# (EC2 user guide, "Spot request status"). Launch-time capacity errors
# (InsufficientInstanceCapacity, capacity-not-available) are not interruptions: nothing ran.
MARKERS = (
    "Server.SpotInstanceTermination",
    "Server.SpotInstanceShutdown",
    "instance-terminated-by-price",
    "instance-terminated-no-capacity",
    "instance-terminated-capacity-oversubscribed",
    "instance-stopped-by-price",
    "instance-stopped-no-capacity",
    "instance-stopped-capacity-oversubscribed",
    "marked-for-termination",
    "marked-for-stop",
)


def interruption(*texts: str) -> str | None:
    """The first line of `texts` that shows a spot interruption, or None."""
    markers = [m.lower() for m in MARKERS]
    for text in texts:
        for line in (text or "").splitlines():
            if any(m in line.lower() for m in markers):
                return line.strip()
    return None
