"""A FreeSWITCH stand-in that speaks the real event-socket protocol (see ../shared/esl-captures).

    fs = FreeSwitchStandIn(port=0, time_scale=10).start()
    call = fs.place_call(kind="inbound", line="2101", outside="0335550100")
    fs.wait_idle()

Calls replay the real captures' event scripts with the call's own UUIDs, numbers and times.
"""

from yangyang_rec.standin.calls import PlacedCall
from yangyang_rec.standin.server import FreeSwitchStandIn

__all__ = ["FreeSwitchStandIn", "PlacedCall"]
