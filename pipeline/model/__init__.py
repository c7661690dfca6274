"""Clean-room DUSt3R: config, model, checkpoint loading, image preprocessing."""
