"""Synthetic generators, the HDF5 cache and the loaders every family shares."""

from core.data.hdf5 import DataFileError, DatasetSpec, cached_hdf5, load_hdf5, write_hdf5

__all__ = ["DataFileError", "DatasetSpec", "load_hdf5", "write_hdf5", "cached_hdf5"]
