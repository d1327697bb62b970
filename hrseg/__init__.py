"""hrseg: HRNetV2 and HRNetV2+OCR semantic segmentation for current PyTorch."""

__version__ = "0.1.0"
