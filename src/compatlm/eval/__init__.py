"""Evaluation: the runner that produces per-instance predictions, and the measuring core that
turns two prediction sets into flips, compatibility metrics, paired statistics and a CI gate."""
