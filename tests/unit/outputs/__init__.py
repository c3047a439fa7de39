"""outputs: frame names, frames re-decoded as PNG, exports, embedding plot and report."""
