"""Loss-spike detection, for PaLM-style recovery (Chowdhery et al. 2022, section 5.1): on a spike,
restart from the last checkpoint and skip the batches around the spike.

The rule: a step's loss is a spike when it is not finite (nor its gradient norm), or when the window
holds `window` earlier losses and the loss exceeds both mean + sigmas x std of the window and
factor x its median. The two thresholds together ignore the noise of a flat curve (where std is tiny)
and the noise of a noisy one (where the median test alone would fire). The window holds accepted
losses only, so a spike does not raise the bar for the next one.
"""

from __future__ import annotations

import math
import statistics
from collections import deque


class SpikeDetector:
    def __init__(self, window: int, sigmas: float, factor: float, history: list[float] = ()):
        self.window, self.sigmas, self.factor = window, sigmas, factor
        self.losses: deque[float] = deque(history, maxlen=max(window, 1))

    def is_spike(self, loss: float, grad_norm: float) -> bool:
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            return True
        if self.window == 0 or len(self.losses) < self.window:
            return False
        mean, std = statistics.fmean(self.losses), statistics.pstdev(self.losses)
        return loss > mean + self.sigmas * std and loss > self.factor * statistics.median(self.losses)

    def accept(self, loss: float) -> None:
        self.losses.append(loss)
