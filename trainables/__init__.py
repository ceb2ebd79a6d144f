"""Ray Tune trainables, one per experiment family. The only package that knows Tune."""
