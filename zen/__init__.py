"""zen: reference implementations for *Zen and the Art of Large-Model Architecture*.

One module per concept of the book. The core (device, seeding, the scale knob, offline
data, a training loop, plotting) is imported here; chapter modules are imported by name,
for example ``from zen import attention``, so heavy optional libraries load only when used.
"""

from zen.device import generator, get_device, rng, seed_everything, seed_offset
from zen.scale import by_scale, get_scale

__version__ = "0.1.0"

__all__ = [
    "get_device",
    "seed_everything",
    "generator",
    "rng",
    "seed_offset",
    "by_scale",
    "get_scale",
    "__version__",
]
