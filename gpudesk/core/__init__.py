"""Everything that talks to hosts: config, SSH, Docker, GPU agent, runs. Never imports textual."""
