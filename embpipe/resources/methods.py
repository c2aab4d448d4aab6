"""Which methods run: the one place for the LMAR, EmbGen and mining switches (ablations when off)."""

from dagster import ConfigurableResource
from pydantic import Field

from embpipe.llm.budget import METHOD_STAGES, MINING_STAGE


class MethodsResource(ConfigurableResource):
    """Method switches read by the stages they turn on or off."""

    lmar: bool = Field(
        default=True,
        description="Run LMAR's stages (labelled triplets, triplet tuning, clustering, cluster profiles and "
        "validated cluster questions); off, they store empty tables and the base model, and only single-chunk "
        "questions are trained on.",
    )
    embgen: bool = Field(
        default=False,
        description="Run EmbGen's stages (entity extraction, entity clusters, proximity / intra-cluster / "
        "inter-cluster questions with answers under a token budget); off, they store empty tables.",
    )
    mining: bool = Field(
        default=False,
        description="Run the student-teacher mining rounds (the teacher judges the student's top results); off, "
        "mining_rounds keeps the margin-mined negatives alone and its token-budget share goes to the questions. "
        "Off by default: on techqa its judgements bought no measurable nDCG@10 (the ledger) and cost a third of "
        "the run's time.",
    )

    def idle_teacher_stages(self) -> frozenset[str]:
        """The teacher stages of the methods switched off (their token-budget shares go to the question stage)."""
        switched_off = [method for method, on in (("lmar", self.lmar), ("embgen", self.embgen)) if not on]
        idle = {stage for method in switched_off for stage in METHOD_STAGES[method]}
        return frozenset(idle if self.mining else idle | {MINING_STAGE})
