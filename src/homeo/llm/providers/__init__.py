"""Model providers: each module implements `homeo.llm.base.Model`."""
