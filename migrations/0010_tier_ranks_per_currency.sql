-- Tier ranks (and names) are unique per currency, so a EUR ladder can live beside the
-- USD one (issue 8 item 8). An order only ever qualifies for tiers of its currency.
ALTER TABLE tiers DROP CONSTRAINT tiers_rank_key;
ALTER TABLE tiers ADD CONSTRAINT tiers_currency_rank_key UNIQUE (currency, rank);
ALTER TABLE tiers DROP CONSTRAINT tiers_name_key;
ALTER TABLE tiers ADD CONSTRAINT tiers_currency_name_key UNIQUE (currency, name);
