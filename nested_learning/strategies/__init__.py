"""Continual-learning strategies (naive, replay, EWC, LwF, joint) that apply to every network.

Chosen with the `strategy` config group; `base.Strategy` describes the points where the framework
consults them.
"""
