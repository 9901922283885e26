"""The analysis cycle: new conversations → signals → gaps → priorities → one suggestion per gap."""

from core.cycle.reshape import QUIET_DAYS
from core.cycle.result import CycleResult
from core.cycle.run import Cycle

__all__ = ["QUIET_DAYS", "Cycle", "CycleResult"]
