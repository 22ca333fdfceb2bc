"""tertiary.models"""
