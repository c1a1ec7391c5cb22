-- Sample data for the dev stack (compose: run once by the postgres image's entrypoint on an empty
-- volume; native: loaded by devstack/stack.py into a new cluster). The table is the one the
-- contract assets/postgres/v1.0/orders.yaml describes. psql runs it, so \connect works.

-- Nessie's version store (JDBC2) in the compose stack; the native stack's Nessie uses RocksDB.
CREATE DATABASE nessie;
CREATE DATABASE shop;
\connect shop

CREATE TABLE public.orders (
  order_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  order_uuid       uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
  customer_id      bigint NOT NULL,
  customer_email   varchar(254) NOT NULL,
  status           varchar(16) NOT NULL
                   CHECK (status IN ('pending', 'paid', 'shipped', 'cancelled', 'refunded')),
  currency         char(3) NOT NULL,
  amount           numeric(12, 2) NOT NULL CHECK (amount >= 0),
  tax_amount       numeric(12, 2),
  item_count       integer NOT NULL CHECK (item_count > 0),
  shipping_address jsonb,
  notes            text,
  ordered_at       timestamptz NOT NULL,
  updated_at       timestamptz NOT NULL DEFAULT now(),
  shipped_on       date,
  is_gift          boolean NOT NULL DEFAULT false
);

INSERT INTO public.orders
  (customer_id, customer_email, status, currency, amount, tax_amount, item_count, shipping_address,
   notes, ordered_at, updated_at, shipped_on, is_gift)
VALUES
  (101, 'ada@example.com', 'paid', 'EUR', 120.50, 20.08, 2,
   '{"city": "Berlin", "country": "DE"}', NULL, '2026-01-05 09:12:00+00', '2026-01-05 09:15:00+00', NULL, false),
  (102, 'grace@example.com', 'shipped', 'USD', 45.00, 3.60, 1,
   '{"city": "Boston", "country": "US"}', 'leave at the door', '2026-01-06 14:01:00+00',
   '2026-01-08 10:00:00+00', '2026-01-08', false),
  (101, 'ada@example.com', 'pending', 'EUR', 9.99, 1.60, 1,
   NULL, NULL, '2026-01-07 18:30:00+00', '2026-01-07 18:30:00+00', NULL, true),
  (103, 'linus@example.com', 'cancelled', 'EUR', 300.00, NULL, 3,
   '{"city": "Helsinki", "country": "FI"}', 'customer changed their mind', '2026-01-08 08:00:00+00',
   '2026-01-08 09:45:00+00', NULL, false),
  (104, 'margaret@example.com', 'refunded', 'GBP', 75.25, 12.54, 4,
   '{"city": "London", "country": "GB"}', NULL, '2026-01-09 11:11:00+00', '2026-01-12 16:20:00+00',
   '2026-01-10', false),
  (105, 'barbara@example.com', 'paid', 'USD', 0.00, 0.00, 1,
   '{"city": "Denver", "country": "US"}', 'free sample', '2026-01-10 07:45:00+00',
   '2026-01-10 07:46:00+00', NULL, true);
