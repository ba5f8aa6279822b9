"""One reader per file format behind one dispatch: raster, DICOM and NIfTI slices."""
