"""The pgha-policy CrossGuard pack, its offline check and the mock-runtime evaluator it uses."""
