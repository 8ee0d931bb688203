"""gpudesk: PyTorch-CUDA dev containers, GPUs and training runs on remote hosts, from a terminal."""

__version__ = "0.1.0"
