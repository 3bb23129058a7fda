"""Training and inference orchestration for one service set."""
