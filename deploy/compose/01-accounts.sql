-- Runs once, on the master's first start (mounted into /docker-entrypoint-initdb.d). The statements are
-- binlogged, so the replicas, which start replicating from the beginning of the master's binlog
-- (02-replication.sh), get the same databases and accounts: an account must exist with the same password on
-- every backend, because rwsplit logs in to each with the client's own credentials.
-- Demo passwords, the same as deploy/sandbox.sh's; they also appear in compose/proxy.yaml and
-- docker-compose.yml (REPLICATION_PASSWORD): change them together.

CREATE DATABASE rwsplit;   -- the monitor account's schema (replication heartbeat table)
CREATE DATABASE app;

-- The application's account. Ordinary (no SUPER / READ_ONLY ADMIN), so read_only on the replicas stops
-- any write that would reach one.
CREATE USER 'app'@'%' IDENTIFIED BY 'apppw';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, CREATE TEMPORARY TABLES, LOCK TABLES,
      EXECUTE, CREATE ROUTINE, ALTER ROUTINE, CREATE VIEW, SHOW VIEW, TRIGGER, EVENT, REFERENCES
      ON app.* TO 'app'@'%';

-- rwsplit's health checker (health.user): replica status and lag, and the heartbeat table.
CREATE USER 'monitor'@'%' IDENTIFIED BY 'monitorpw';
GRANT SLAVE MONITOR, REPLICATION CLIENT ON *.* TO 'monitor'@'%';
GRANT SELECT, INSERT, UPDATE, CREATE ON rwsplit.* TO 'monitor'@'%';

-- The replicas' replication account.
CREATE USER 'repl'@'%' IDENTIFIED BY 'replpw';
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';
