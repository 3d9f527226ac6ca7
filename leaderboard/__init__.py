"""The leaderboard: `data` turns MLflow runs into tables (pure); the Streamlit app shows them."""
