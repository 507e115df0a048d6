"""A synthetic world of streams with known answers: plans from a seed, frames, questions, and files on disk
(`vstream data synth`, the `synthetic:` source)."""
