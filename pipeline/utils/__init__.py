"""Infrastructure every stage uses: flags, logs, progress, external tools, run accounting."""
