"""tap-spreadsheets 1.1.2 on a Google Drive folder (gdrive:// paths through gdrive-fsspec 0.4.1).

Why a thin subclass of the tap (console script `tap-google-drive`) and not the plain tap with
gdrive-fsspec next to it:

- tap-spreadsheets takes a file's modification time from fsspec's `mtime`, `last_modified` or
  `LastModified` and falls back to "now"; gdrive-fsspec only has Drive's `modifiedTime`, so every
  file looked changed and was read again on every run. `DriveFileSystem` adds `mtime`, which makes
  the tap's own per-file bookmark (`_sdc_last_modified`) work.
- The tap gives gdrive-fsspec no credentials (its storage options are S3-only), and gdrive-fsspec's
  default is an interactive browser login. The tap here takes a service account key and a folder
  id as settings and hands them to the file system through fsspec's configuration.
- gdrive-fsspec sends each Drive request once; `RetryingHttpRequest` retries 429 (honouring
  Retry-After), 5xx and rate-limit 403s.
- The tap downloads the first file of a stream on every run to infer the schema, and each file it
  reads twice (dialect sniffing, then rows). Here a file is downloaded at most once per run, the
  catalog's schema is used when Meltano passes one, and a file not modified since the bookmark is
  skipped before anything is downloaded.
"""
