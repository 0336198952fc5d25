"""scgan-rt: SCGAN colorization for photos and films, from training to TensorRT."""
__version__ = "0.1.0"
