"""Cloud Haskell's own tests (distributed-process-tests), ported."""
