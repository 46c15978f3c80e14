"""alexnet-deploy: AlexNet from the 2012 paper to a verified, benchmarked inference engine."""

__version__ = "0.1.0"
