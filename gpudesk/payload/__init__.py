"""The payload: code shipped to GPU hosts and containers and run there.

Nothing under this package imports gpudesk: each file runs on a host or in a container with
only the standard library (plus torch for the training scripts, nvidia-ml-py optionally for the
GPU agent).
"""
