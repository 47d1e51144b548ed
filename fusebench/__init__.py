"""fusebench: train, run and compare infrared-visible image fusion methods with metrics you can trust."""

__version__ = "0.1.0"
