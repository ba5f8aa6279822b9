"""Slice readers, one per file format behind one dispatch (raster, DICOM, NIfTI); the NIfTI parser also reads BraTS volumes."""
