#!/bin/sh
# Compose only (the mysql image runs it once, after 01-shop.sql): the tap's account may read the
# binlog for LOG_BASED replication. The native stack's MariaDB account has every privilege already.
set -eu
mysql --user=root --password="$MYSQL_ROOT_PASSWORD" --execute \
  "GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO '$MYSQL_USER'@'%'; FLUSH PRIVILEGES;"
