"""winnow.media: frame sampling, rotation, chunking, images, bad input, seeking, metadata.

Every video here is made in the test with PyAV (through winnow.demo or directly) and checked
against an independent plain-PyAV decode of the same file.
"""
