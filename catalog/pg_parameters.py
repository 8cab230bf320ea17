"""PostgreSQL 17 parameters by how a change reaches a running server (pure data; config, plan and tests use it).

The `postmaster` context is PostgreSQL's own list: `postgres --describe-config` of the packaged 17.12
(Debian trixie), column 2. A change of one of these takes effect only at a restart; Patroni then marks the
member `pending_restart`, and the rolling step restarts the members one at a time (operations/
pending_restarts.py). Every other parameter is applied by a reload. tests/tools checks this list against the
real binary.
"""

from __future__ import annotations

from typing import Final

POSTGRES_MAJOR: Final = 17

RESTART_CONTEXT: Final = frozenset((
    "archive_mode", "autovacuum_freeze_max_age", "autovacuum_max_workers",
    "autovacuum_multixact_freeze_max_age", "bonjour", "bonjour_name", "cluster_name",
    "commit_timestamp_buffers", "data_directory", "data_sync_retry", "dynamic_shared_memory_type",
    "event_source", "external_pid_file", "hba_file", "hot_standby", "huge_page_size", "huge_pages",
    "ident_file", "jit_provider", "listen_addresses", "logging_collector", "max_connections",
    "max_files_per_process", "max_locks_per_transaction", "max_logical_replication_workers",
    "max_notify_queue_pages", "max_pred_locks_per_transaction", "max_prepared_transactions",
    "max_replication_slots", "max_wal_senders", "max_worker_processes", "min_dynamic_shared_memory",
    "multixact_member_buffers", "multixact_offset_buffers", "notify_buffers", "port", "recovery_target",
    "recovery_target_action", "recovery_target_inclusive", "recovery_target_lsn", "recovery_target_name",
    "recovery_target_time", "recovery_target_timeline", "recovery_target_xid", "reserved_connections",
    "serializable_buffers", "shared_buffers", "shared_memory_type", "shared_preload_libraries",
    "subtransaction_buffers", "superuser_reserved_connections", "track_activity_query_size",
    "track_commit_timestamp", "transaction_buffers", "unix_socket_directories", "unix_socket_group",
    "unix_socket_permissions", "wal_buffers", "wal_decode_buffer_size", "wal_level", "wal_log_hints",
))


def needs_restart(name: str) -> bool:
    """Whether a change of parameter `name` takes effect only when PostgreSQL restarts."""
    return name in RESTART_CONTEXT
