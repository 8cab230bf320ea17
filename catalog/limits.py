"""Limits shared by the stack-config models (config/) and the policy pack (policy/): one source for both."""

from __future__ import annotations

from typing import Final

# Member counts (see catalog.roles for why each minimum).
ETCD_MIN_MEMBERS: Final = 3
POSTGRES_MIN_NODES: Final = 3
HAPROXY_MIN_NODES: Final = 2

# Patroni's own lower bounds (patroni/config.py, validator.py); Patroni raises smaller values silently.
PATRONI_MIN_TTL: Final = 20
PATRONI_MIN_LOOP_WAIT: Final = 1
PATRONI_MIN_RETRY_TIMEOUT: Final = 3

# pgBackRest: at least one full backup kept, or nothing is ever expired and nothing can be restored.
BACKUP_MIN_RETENTION_FULL: Final = 1
BACKUP_MAX_RETENTION: Final = 9999

# VRRPv2 PASS authentication carries at most 8 characters; keepalived truncates longer ones.
VRRP_PASS_LENGTH: Final = 8

# pg_hba methods that are never allowed on a network (host*) rule.
WEAK_HBA_METHODS: Final = ("trust", "password", "md5")

# The widest network `postgres.client_cidrs` may name: a prefix shorter than /8 is wider than the largest
# private network (10.0.0.0/8) and holds public addresses of other organisations; 0.0.0.0/0 is everyone.
CLIENT_CIDR_MIN_PREFIX: Final = 8

# etcd's users (operations/etcd.py): root, which pgha's own etcdctl calls act as by a client certificate with
# that common name, and Patroni's. No host may carry one of these names: its certificates' common name is its
# name, and over gRPC etcd takes a client certificate's common name for the user it acts as.
ETCD_ROOT_USER = "root"
ETCD_PATRONI_USER = "patroni"
ETCD_USERS = (ETCD_ROOT_USER, ETCD_PATRONI_USER)
