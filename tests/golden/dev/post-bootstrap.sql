-- Managed by pgha (Pulumi); do not edit: changes are overwritten.
\set ON_ERROR_STOP on
CREATE ROLE "app" LOGIN PASSWORD 'SCRAM-SHA-256$4096:16e9mqYdMSd5xnD5/w5bTQ==$KfgXqoY0iG6ggO8+omBeflfVgQ0UZiZaSEpUUGUDzH0=:kL1ahC9vsKvaBc9fX0KsuGgglxjavhqZhxwzpz8zmuE=';
CREATE ROLE "app_ro" LOGIN PASSWORD 'SCRAM-SHA-256$4096:JfZ+EbIrOj24Gs8Tz/vjow==$rb9ZOm7enqLTmyUAXhbGtseDNtPObmkrt2RDVQmnL+M=:k6Xx6WVs//hPibtMWF1uyXmeNCZ5bTIj/vr7Nlm0aTY=';
GRANT pg_read_all_data TO "app_ro";
ALTER ROLE "app_ro" SET default_transaction_read_only = on;
CREATE DATABASE "app" OWNER "app" ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE "app" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE "app" TO "app";
GRANT CONNECT ON DATABASE "app" TO "app_ro";
