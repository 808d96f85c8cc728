#!/bin/bash
# Runs once, on a replica's first start (mounted into /docker-entrypoint-initdb.d; the image's entrypoint runs
# it against its temporary init server, as root over the socket). Points the replica at the master with GTID
# and starts replicating. gtid_slave_pos is empty, so the replica replays the master's binlog from its first
# event, which brings over what 01-accounts.sql created there. After init the server restarts and the slave
# threads start again by themselves (the connection settings are stored in master.info).
#
# The entrypoint sources, rather than runs, a script without the executable bit (a bind mount can lose it),
# so this file must stay safe to source: no `exit`, no `set -u`.

MYSQL_PWD="$MARIADB_ROOT_PASSWORD" mariadb --protocol=socket --user=root <<SQL
CHANGE MASTER TO
    MASTER_HOST='${REPLICATION_MASTER_HOST:-master}',
    MASTER_PORT=${REPLICATION_MASTER_PORT:-3306},
    MASTER_USER='${REPLICATION_USER:-repl}',
    MASTER_PASSWORD='${REPLICATION_PASSWORD:-replpw}',
    MASTER_USE_GTID=slave_pos,
    MASTER_CONNECT_RETRY=5;
START SLAVE;
SQL
