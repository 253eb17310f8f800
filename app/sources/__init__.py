"""Where code comes from: git clone and fetch, repository credentials, push payloads, webhooks."""
