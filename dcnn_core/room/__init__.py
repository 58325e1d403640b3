"""The room: server rules, the shared leaderboard."""
