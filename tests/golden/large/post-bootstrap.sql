-- Managed by pgha (Pulumi); do not edit: changes are overwritten.
\set ON_ERROR_STOP on
CREATE ROLE "app" LOGIN PASSWORD 'SCRAM-SHA-256$4096:BN6qI2lU8mfbxrYm4X0oEw==$8jCrC7gPCfmZaXzDhsBYquINJA+3o8g3PdJk/W6RxUQ=:+T/qBx+wIu2zz7eEYVUlRFNZCntqqF6RND3LF9bf3Zk=';
CREATE ROLE "app_ro" LOGIN PASSWORD 'SCRAM-SHA-256$4096:Fp1gGft9dvU14KOOJpt4DA==$AWqFz4eEfhgKN+pWhJTrbn3x6pv4+LAf7f0eZ2hpFCM=:KmwZk0sJkD/VTMB/GhvAIp+o7rjs0srilbZ/4BhKX74=';
GRANT pg_read_all_data TO "app_ro";
ALTER ROLE "app_ro" SET default_transaction_read_only = on;
CREATE DATABASE "orders" OWNER "app" ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE "orders" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE "orders" TO "app";
GRANT CONNECT ON DATABASE "orders" TO "app_ro";
