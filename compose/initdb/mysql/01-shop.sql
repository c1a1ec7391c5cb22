-- Sample data for the dev stack (compose: run once by the mysql image's entrypoint on an empty
-- volume; native: loaded into MariaDB by devstack/stack.py). The table is the one the contract
-- assets/mysql/v1.0/orders.yaml describes; plain SQL that MySQL 8 and MariaDB both accept.

CREATE DATABASE IF NOT EXISTS shop CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
USE shop;

CREATE TABLE orders (
  id             INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  customer_id    INT UNSIGNED NOT NULL,
  customer_email VARCHAR(254) NOT NULL,
  status         ENUM('pending', 'paid', 'shipped', 'cancelled', 'refunded') NOT NULL,
  currency       CHAR(3) NOT NULL,
  total          DECIMAL(12, 2) NOT NULL,
  quantity       SMALLINT UNSIGNED NOT NULL,
  is_gift        TINYINT(1) NOT NULL DEFAULT 0,
  created_at     DATETIME NOT NULL,
  updated_at     TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  shipped_on     DATE NULL,
  KEY (customer_id)
);

INSERT INTO orders
  (customer_id, customer_email, status, currency, total, quantity, is_gift, created_at, updated_at, shipped_on)
VALUES
  (201, 'alan@example.com', 'paid', 'EUR', 59.90, 1, 0, '2026-01-05 10:00:00', '2026-01-05 10:02:00', NULL),
  (202, 'edsger@example.com', 'shipped', 'EUR', 129.00, 3, 0, '2026-01-06 12:30:00', '2026-01-07 09:00:00',
   '2026-01-07'),
  (201, 'alan@example.com', 'pending', 'EUR', 15.00, 1, 1, '2026-01-07 17:45:00', '2026-01-07 17:45:00', NULL),
  (203, 'frances@example.com', 'refunded', 'USD', 42.42, 2, 0, '2026-01-08 08:15:00', '2026-01-11 13:00:00',
   '2026-01-09'),
  (204, 'john@example.com', 'cancelled', 'GBP', 250.00, 5, 0, '2026-01-09 19:20:00', '2026-01-09 20:00:00',
   NULL);
