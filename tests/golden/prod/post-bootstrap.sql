-- Managed by pgha (Pulumi); do not edit: changes are overwritten.
\set ON_ERROR_STOP on
CREATE ROLE "app" LOGIN PASSWORD 'SCRAM-SHA-256$4096:29NPo0V6usuhFYsJyDcPPg==$BtU0ZsuxWUQCT9zTI9Ozzh3UxKHUaIY2V6dtBAOoIn8=:aHeficZSQyehMHF7qwl5TpAASN85e/4FiTHnzA/VrTk=';
CREATE ROLE "app_ro" LOGIN PASSWORD 'SCRAM-SHA-256$4096:9pce7lxVqpFOG0KJRg50pQ==$tL2/OB+CPY4HjD5GeN9nL6m0HSaQRZm5CiohefdWOUs=:Bhe8/S03z+NsiO+l08w6vIyqXMvqcTnFKjGR80qO6LE=';
GRANT pg_read_all_data TO "app_ro";
ALTER ROLE "app_ro" SET default_transaction_read_only = on;
CREATE DATABASE "app" OWNER "app" ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE "app" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE "app" TO "app";
GRANT CONNECT ON DATABASE "app" TO "app_ro";
