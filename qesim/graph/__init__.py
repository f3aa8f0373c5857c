"""Layer-graph IR (pydantic), JSON schema, shape presets and graph builders."""
