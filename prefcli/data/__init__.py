"""Preference records on disk: the record contract, readers, dataset preparation and atomic writers."""
