"""What plugs in from outside the repository without a fork: learner files, modules and entry
points (outside.py), and frozen pretrained encoders evaluated as they are (encoders.py)."""
