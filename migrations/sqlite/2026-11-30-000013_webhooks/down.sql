DROP TABLE webhook_deliveries;
DROP TABLE source_webhooks;
