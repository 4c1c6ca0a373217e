"""Channel adapters (chat, SMS, email, telephony): native traffic in, replies out."""
