"""napari face of AutoMat: reader, writer, sample data, layer conversions, widgets."""
