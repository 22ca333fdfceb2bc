"""tertiary.relax"""
