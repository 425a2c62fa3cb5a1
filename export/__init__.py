"""Export tools: turn a trained LilNetX model into files that ship."""
