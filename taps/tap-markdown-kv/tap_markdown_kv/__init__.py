"""Singer tap reading Markdown-KV files with the repository's own parser."""
