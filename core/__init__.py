"""Ray-free library: data, models, losses, schedules, metrics and one training loop.

Nothing under ``core`` imports Ray, so every family can be trained in a plain
Python loop (that is also how the wrapper overhead is measured).
"""
